# Tiny and fast: tests and CI on synthetic balloons (`balloondet data --synthetic --root data/synthetic`).
_base_ = './rtmdet_tiny_cpu-scratch_balloon.py'

data_root = 'data/synthetic/'
img_scale = (192, 192)  # synthetic balloons are large and plain: low resolution is enough
max_epochs = 30
interval = 10

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=img_scale, ratio_range=(0.75, 1.25), keep_ratio=True),
    dict(type='RandomCrop', crop_size=img_scale),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=img_scale, pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='Pad', size=img_scale, pad_val=dict(img=(114, 114, 114))),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,  # workers cost more than they save on tiny data
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'val.json')
test_evaluator = val_evaluator

train_cfg = dict(max_epochs=max_epochs, val_interval=interval, dynamic_intervals=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0e-3, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', eta_min=0.004 * 0.05, begin=max_epochs // 2, end=max_epochs,
         T_max=max_epochs // 2, by_epoch=True, convert_to_iter_based=True),
]
default_hooks = dict(checkpoint=dict(interval=1))  # every epoch: the resume test kills a run after epoch 2
custom_hooks = [  # no pipeline switch: the pipeline above is already the simple one
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, update_buffers=True, priority=49),
]
