# An experiment on the CPU recipe (see the README's table of recipes tried): copy-paste of the real
# balloon polygons (Ghiasi et al. 2021) in the Mosaic stage, so that each crop shows more balloons, on
# more backgrounds, than 61 photos hold. The Mosaic-free last stage stays as in the recipe.
_base_ = './rtmdet_tiny_cpu-scratch_balloon_320.py'  # the 320-px recipe it was measured on

custom_imports = dict(imports=['balloondet.engine.transforms'], allow_failed_imports=False)  # CachedCopyPaste

img_scale = (320, 320)
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    # polygons, not bitmaps: cheap to carry through mosaic, resize and crop; pasted as pixels at 320 px
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=False),
    dict(type='CachedMosaic', img_scale=img_scale, pad_val=114.0, max_cached_images=20, random_pop=False),
    dict(type='RandomResize', scale=(img_scale[0] * 2, img_scale[1] * 2), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=img_scale),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=img_scale, pad_val=dict(img=(114, 114, 114))),
    dict(type='CachedCopyPaste', prob=0.5, max_cached_images=20, max_num_pasted=10),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
