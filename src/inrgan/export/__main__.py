"""``python -m inrgan.export fetch``: vendor the pinned onnxruntime-web (npm pack) for ``inrgan export --format web``."""

from .web import main

raise SystemExit(main())
