"""The tally port: counts shared by every process of a deployment (collector rejections)."""
