"""Files in and out: videos, images, keypoint files. Only io/ and cli/ touch the disk."""
