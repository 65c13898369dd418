def area(r):
    """Area of a circle of radius r."""
    return 3.14159 * r * r
