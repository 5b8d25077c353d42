"""Reading Sentinel-1 SAFE products (zip or folder) without extracting them."""
