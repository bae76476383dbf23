"""Small tensor operations in pure torch that parts share (no compiled extension, no torchvision)."""
