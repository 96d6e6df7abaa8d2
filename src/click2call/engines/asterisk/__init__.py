"""The Asterisk engine over AMI: a sans-IO codec (codec.py) and call tracker (tracker.py)."""
