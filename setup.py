"""synthUNet: self-configuring MRI sequence synthesis."""
from pathlib import Path

from setuptools import find_packages, setup

COMMANDS = {
    # the main job end to end
    "synth_quickstart": "synthunet.quickstart:main",
    # foundation
    "synth_validate_dataset": "synthunet.dataset.validate:main",
    "synth_convert_brats": "synthunet.dataset.convert_brats:main",
    "synth_make_example_dataset": "synthunet.dataset.example.generate:main",
    "synth_make_sr_dataset": "synthunet.dataset.make_sr_dataset:main",
    # self-configuration
    "synth_extract_fingerprint": "synthunet.fingerprint.cli:main",
    "synth_plan_experiment": "synthunet.planning.cli:main",
    "synth_preprocess": "synthunet.preprocessing.cli:main",
    "synth_plan_and_preprocess": "synthunet.planning.plan_and_preprocess:main",
    # training and inference
    "synth_train": "synthunet.training.cli:main",
    "synth_predict": "synthunet.inference.cli:main",
    "synth_segment": "synthunet.inference.segment_cli:main",
    "synth_ensemble": "synthunet.inference.ensemble_folders:main",
    "synth_find_best_configuration": "synthunet.inference.find_best_configuration:main",
    # sharing trained models
    "synth_export_model_to_zip": "synthunet.model_sharing.cli:export_main",
    "synth_install_pretrained_model_from_zip": "synthunet.model_sharing.cli:install_main",
    # evaluation
    "synth_evaluate": "synthunet.evaluation.cli:evaluate_main",
    "synth_accumulate_crossval": "synthunet.evaluation.cli:accumulate_main",
    "synth_report": "synthunet.evaluation.report:main",
}

setup(
    name="synthunet",
    version="0.1.0",
    description="Self-configuring pipeline for MRI sequence synthesis (the nnU-Net of synthesis)",
    long_description=Path(__file__).with_name("README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["synthunet", "synthunet.*"]),
    package_data={"synthunet": ["dataset/example/data/*"]},
    include_package_data=True,
    install_requires=[
        "torch>=2.1",
        "numpy>=1.24",
        "scipy>=1.10",
        "nibabel>=5.0",
        "SimpleITK>=2.2",
        "acvl-utils>=0.2",
        "scikit-image>=0.21",
        "tqdm>=4.60",
        "matplotlib>=3.7",
    ],
    extras_require={
        "test": [
            "pytest>=7",
            "pytest-xdist>=3",
            "torchio==1.2.*",
            "intensity-normalization==3.*",
            "batchgenerators>=0.25",  # reference for the augmentation tests and the old-pipeline benchmark row
            "scikit-learn>=1.3",  # reference for the Gaussian mixture of tissue matching
        ],
    },
    entry_points={"console_scripts": [f"{name}={target}" for name, target in COMMANDS.items()]},
)
