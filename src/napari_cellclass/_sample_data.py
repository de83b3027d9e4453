def phase_contrast_cell():
    from skimage.data import cell
    return [(cell(), {"name": "cell"}, "image")]
