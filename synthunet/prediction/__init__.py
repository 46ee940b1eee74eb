"""The prediction core under training and inference: what a trained model folder is (naming, reading, checkpoints,
loading its networks) and predicting a preprocessed volume with networks (sliding window, 2.5D slice-wise
prediction, 45-degree rotation and orientation fusion, voxel statistics over folds, class probabilities).

Training's end-of-training validation and synth_predict / synth_segment use the same code; raw images,
preprocessing and file layouts are inference's business.
"""
