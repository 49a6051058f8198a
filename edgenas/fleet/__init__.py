"""Jobs on devices: profile, deploy, calibrate, LUT sync; the fleet inventory and refresh."""
