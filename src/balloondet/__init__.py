"""balloondet: RTMDet-tiny on the balloon dataset, trained and explained."""
__version__ = "0.1.0"
