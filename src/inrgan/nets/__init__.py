"""Pretrained networks that both the models and the metrics use: EfficientNet-Lite0 and -Lite1 (ImageNet).

They live below both, so that neither imports the other: the metrics embed images with Lite0, the projected
discriminator looks at them through Lite1.
"""
