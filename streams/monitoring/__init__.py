"""Sequential monitoring: charts, control limits, calibration, feed health and the alert lifecycle. Pure logic."""
