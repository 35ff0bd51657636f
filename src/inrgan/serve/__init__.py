"""``inrgan serve``: a deep-zoom viewer for continuous generators in the browser (Flask, Leaflet)."""
