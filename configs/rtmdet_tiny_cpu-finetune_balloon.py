# Fine-tune the COCO model on a CPU (no GPU, internet or a downloaded checkpoint): the recipe `auto` picks there.
# Published basis: mmyolo's configs/rtmdet/rtmdet_tiny_fast_1xb12-40e_cat.py (RTMDet-tiny from COCO on a one-class
# set of a few hundred photos: frozen_stages=4, batch 12, AdamW at the base rate 0.004, 40 epochs, the last 5
# without Mosaic, val every 10). Only the train size differs, for the CPU's time (docs/results.md, "three paths").
_base_ = './rtmdet_tiny_1xb12-40e_balloon.py'

img_scale = (320, 320)  # a quarter of 640's pixels: ~4x cheaper per image; tested at 640 (the base's test pipeline)
max_epochs = 40
stage2_num_epochs = 5
base_lr = 0.004  # mmyolo's cat recipe: the frozen backbone leaves only the neck and head to move
interval = 10

model = dict(backbone=dict(frozen_stages=4))  # the whole COCO backbone frozen: no backward through it (~40 % less)

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='CachedMosaic', img_scale=img_scale, pad_val=114.0, max_cached_images=20, random_pop=False),
    dict(type='RandomResize', scale=(img_scale[0] * 2, img_scale[1] * 2), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=img_scale),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=img_scale, pad_val=dict(img=(114, 114, 114))),
    dict(type='CachedMixUp', img_scale=img_scale, ratio_range=(1.0, 1.0), max_cached_images=10, random_pop=False,
         pad_val=(114, 114, 114), prob=0.5),
    dict(type='PackDetInputs'),
]
train_pipeline_stage2 = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=img_scale, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=img_scale),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=img_scale, pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

# validations every 10 epochs (each costs a pass over val at 640 px), then every epoch of the last stage
train_cfg = dict(max_epochs=max_epochs, val_interval=interval, dynamic_intervals=[(max_epochs - stage2_num_epochs, 1)])
optim_wrapper = dict(optimizer=dict(lr=base_lr))
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0e-5, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', eta_min=base_lr * 0.05, begin=max_epochs // 2, end=max_epochs,
         T_max=max_epochs // 2, by_epoch=True, convert_to_iter_based=True),
]
default_hooks = dict(checkpoint=dict(interval=5))  # a checkpoint every 5 epochs: what --resume can lose
custom_hooks = [
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, update_buffers=True, priority=49),
    dict(type='PipelineSwitchHook', switch_epoch=max_epochs - stage2_num_epochs, switch_pipeline=train_pipeline_stage2),
]
