# An experiment on the CPU recipe (see the README's table of recipes tried): its Mosaic-free last
# 30 epochs at 480 px instead of 320, to show the model its balloons nearer the 640 px it is tested at
# (medium balloons, AP_m 0.15-0.18, are its weak point). About 2.25x the pixels for those epochs.
_base_ = './rtmdet_tiny_cpu-scratch_balloon_320.py'  # the 320-px recipe it was measured on

stage2_scale = (480, 480)
train_pipeline_stage2 = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=stage2_scale, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=stage2_scale),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=stage2_scale, pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs'),
]
custom_hooks = [
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.002, gamma=200, update_buffers=True, priority=49),
    dict(type='PipelineSwitchHook', switch_epoch=270,  # the base's max_epochs - stage2_num_epochs
         switch_pipeline=train_pipeline_stage2),
]
