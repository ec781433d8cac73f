# An experiment on the CPU recipe (see the README's table of recipes tried): twice the learning rate.
# ScratchDet (Zhu et al. 2019) trains detectors from scratch with BN in every part and higher rates;
# RTMDet-tiny already has BN in the backbone, the neck and the head (RTMDetSepBNHead).
_base_ = './rtmdet_tiny_cpu-scratch_balloon_320.py'  # the 320-px recipe it was measured on

base_lr = 0.008
max_epochs = 300
optim_wrapper = dict(optimizer=dict(lr=base_lr))
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0e-5, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', eta_min=base_lr * 0.05, begin=max_epochs // 2, end=max_epochs,
         T_max=max_epochs // 2, by_epoch=True, convert_to_iter_based=True),
]
