"""Caption data sources: generated scenes and readers of the real formats (COCO, Karpathy, Flickr8k)."""
