"""Image-processing operations shared by the task recipes: pure numpy/OpenCV functions."""
