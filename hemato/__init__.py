"""HematoVision: learn white-blood-cell identification and look inside the CNNs that do it."""
