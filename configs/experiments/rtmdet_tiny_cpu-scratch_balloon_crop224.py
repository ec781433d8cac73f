# An experiment on the CPU recipe for speed (#32): the Mosaic epochs train on 224-px crops instead of 320
# (0.49x the pixels, 0.65x the real iteration: bench/train_loop.py), the Mosaic-free last 30 on the recipe's
# 320. The balloons keep the recipe's scale (the same Mosaic and RandomResize), so the 640-px test stays inside
# the sizes trained on; only the context around them shrinks. The same 2,400 steps, fewer pixels early.
_base_ = './rtmdet_tiny_cpu-scratch_balloon_320.py'  # the 320-px recipe it was measured on

img_scale = (320, 320)  # the recipe's: Mosaic canvas and resize as there
crop_size = (224, 224)
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='CachedMosaic', img_scale=img_scale, pad_val=114.0, max_cached_images=20, random_pop=False),
    dict(type='RandomResize', scale=(img_scale[0] * 2, img_scale[1] * 2), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=crop_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

