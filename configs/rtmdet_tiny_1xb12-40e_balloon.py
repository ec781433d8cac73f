# RTMDet-tiny fine-tuned from COCO on the balloon dataset: the recipe for a GPU with internet.
_base_ = 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'

data_root = 'data/balloon/'
metainfo = dict(classes=('balloon', ), palette=[(220, 20, 60)])
max_epochs = 40
stage2_num_epochs = 10  # last quarter without Mosaic/MixUp, as the base does for its last 20 of 300
base_lr = 0.004 * 12 / 256  # the base's 0.004 is for 8 GPUs x 32 images; linear scaling to 1 x 12
interval = 5

# a bbox head for one class; everything else of the COCO model is kept and fine-tuned
model = dict(
    backbone=dict(init_cfg=None),  # load_from below brings the whole COCO model; skip the ImageNet backbone download
    bbox_head=dict(num_classes=1))
load_from = 'https://download.openmmlab.com/mmdetection/v3.0/rtmdet/rtmdet_tiny_8xb32-300e_coco/rtmdet_tiny_8xb32-300e_coco_20220902_112414-78e30dcc.pth'  # noqa: E501
randomness = dict(seed=0)  # same seed, same device: same run (see README on determinism)

train_dataloader = dict(
    batch_size=12,
    num_workers='auto',  # from the cores (engine.cores): the base's 10 workers suit a GPU server, not a laptop
    persistent_workers=True,
    pin_memory=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='train.json', data_prefix=dict(img='train/')))
val_dataloader = dict(
    batch_size=4,
    num_workers='auto',
    persistent_workers=True,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='val.json', data_prefix=dict(img='val/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'val.json')
test_evaluator = val_evaluator

train_cfg = dict(max_epochs=max_epochs, val_interval=interval, dynamic_intervals=[(max_epochs - stage2_num_epochs, 1)])
optim_wrapper = dict(optimizer=dict(lr=base_lr))
param_scheduler = [
    # warm-up over ~5 epochs of 6 iterations (the base's 1000 iterations would outlast the run)
    dict(type='LinearLR', start_factor=1.0e-5, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', eta_min=base_lr * 0.05, begin=max_epochs // 2, end=max_epochs,
         T_max=max_epochs // 2, by_epoch=True, convert_to_iter_based=True),
]
default_hooks = dict(
    # every epoch, so that --resume after a crash loses no finished epoch; the best is kept apart
    checkpoint=dict(interval=1, max_keep_ckpts=1, save_best='coco/bbox_mAP', rule='greater'),
    logger=dict(interval=1))  # few iterations per epoch: log each one for the curves
custom_hooks = [
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, update_buffers=True, priority=49),
    dict(type='PipelineSwitchHook', switch_epoch=max_epochs - stage2_num_epochs,
         switch_pipeline={{_base_.train_pipeline_stage2}}),
]
visualizer = dict(vis_backends=[dict(type='LocalVisBackend')])
