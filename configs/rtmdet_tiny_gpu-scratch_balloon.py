# From scratch on one GPU, for GPU machines without internet (no COCO checkpoint): 640 px, about 5 minutes on an H100.
_base_ = './rtmdet_tiny_1xb12-40e_balloon.py'

max_epochs = 80  # measured on an H100: ~3.7 s an epoch (6 iterations, fed by the CPU pipeline), so ~5 minutes
stage2_num_epochs = 15
base_lr = 0.004  # from scratch wants the base recipe's full rate, not the fine-tuning one
interval = 10

load_from = None  # nothing pretrained: `balloondet train auto` picks this recipe when the checkpoint is unreachable

train_dataloader = dict(pin_memory=True)  # workers from the cores (engine.cores): up to 8 to feed the GPU

train_cfg = dict(max_epochs=max_epochs, val_interval=interval, dynamic_intervals=[(max_epochs - stage2_num_epochs, 5)])
optim_wrapper = dict(optimizer=dict(lr=base_lr))
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0e-5, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', eta_min=base_lr * 0.05, begin=max_epochs // 2, end=max_epochs,
         T_max=max_epochs // 2, by_epoch=True, convert_to_iter_based=True),
]
custom_hooks = [
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, update_buffers=True, priority=49),
    dict(type='PipelineSwitchHook', switch_epoch=max_epochs - stage2_num_epochs,
         switch_pipeline={{_base_.train_pipeline_stage2}}),
]
