"""Sentinel-1 geometry: WGS84, orbit interpolation, zero-Doppler range–Doppler, TOPS deramping."""
