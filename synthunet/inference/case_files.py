"""Predicting a folder of cases into files: which target each case gets and where it is written, checking
every input and output before the first write, and the pipeline (preprocessing and export in background
processes, the networks in this process). :class:`~synthunet.inference.predictor.SynthPredictor` has these
methods; this module holds them.
"""
from __future__ import annotations

import logging
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from synthunet.dataset.dataset_json import DatasetDescription
from synthunet.dataset.image_io import Geometry, remove_stale_temporaries
from synthunet.dataset.raw_cases import read_case_images
from synthunet.errors import InputError, raise_for_case
from synthunet.inference.case_preprocessing import CasePreprocessing, read_and_preprocess
from synthunet.inference.checks import check_before_writing, raise_problems
from synthunet.inference.export import export_prediction
from synthunet.inference.layout import (InputCase, InputLayoutError, Layout, list_input_cases, output_file_name,
                                        uncertainty_file_name)
from synthunet.inference.pipeline import run_case_pipeline
from synthunet.inference.workers import make_executor
from synthunet.prediction.model_folder import ModelFolder

logger = logging.getLogger(__name__)


@dataclass
class CaseJob:
    """One case to predict: its files, the target, and where the outputs go."""

    case_id: str
    files: dict[str, Path]
    target: str
    output_file: Path
    uncertainty_file: Path | None = None
    #: models that first synthesise missing inputs (``--cascade``), in order
    cascade: list[ModelFolder] = field(default_factory=list)

    def is_done(self) -> bool:
        return self.output_file.is_file() and (self.uncertainty_file is None or self.uncertainty_file.is_file())


class CaseFilePrediction:
    """The file half of :class:`~synthunet.inference.predictor.SynthPredictor`; the other half (models, targets,
    cascade, networks: ``model_for``, ``cascade_steps``, ``predict_preprocessed`` ...) is there."""

    dataset: DatasetDescription
    cascade: bool
    verbose: bool

    def plan_cases(self, input_folder: Path | str, output_folder: Path | str, target: str | None = "auto",
                   brats_subfolders: bool = False, save_uncertainty: bool = False,
                   cases: Sequence[str] | None = None) -> tuple[Layout, list[CaseJob]]:
        """Detect the layout, each case's target and output file; raise once listing every problem.

        ``cases``: only these case ids of the folder (each must be there); default every case.
        """
        layout, jobs, problems, _ = self._plan_cases(input_folder, output_folder, target, brats_subfolders,
                                                     save_uncertainty, cases)
        if problems:
            shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
            raise InputLayoutError(f"{len(problems)} of {len(jobs) + len(problems)} case(s) in {input_folder} "
                                   "cannot be predicted:\n"
                                   "  - " + "\n  - ".join(shown))
        return layout, jobs

    def _plan_cases(self, input_folder: Path | str, output_folder: Path | str, target: str | None,
                    brats_subfolders: bool, save_uncertainty: bool, cases: Sequence[str] | None
                    ) -> tuple[Layout, list[CaseJob], list[str], list[InputCase]]:
        """:meth:`plan_cases` without raising: the layout, the jobs, the problems, and the cases that have one."""
        layout, found = list_input_cases(input_folder, self.dataset)
        if not found:
            raise InputLayoutError(f"No cases found in {input_folder}")
        if cases is not None:
            wanted = set(cases)
            unknown = sorted(wanted - {case.case_id for case in found})
            if unknown:
                raise InputLayoutError(f"{input_folder} holds no case {', '.join(unknown)}")
            found = [case for case in found if case.case_id in wanted]
        jobs, problems, failed = [], [], []
        for case in found:
            try:
                if target is None or target.lower() == "auto":
                    case_target = self._auto_target(case)
                else:
                    case_target = self.model_for(target).target
                available = [c for c in case.files if c != case_target]
                steps, unfilled = self.cascade_steps(available, case_target)
                if unfilled or (steps and not self.cascade):
                    raise InputLayoutError(self.missing_input_message(case.case_id, available, case_target))
            except InputLayoutError as error:
                problems.append(str(error))
                failed.append(case)
                continue
            name = output_file_name(case.case_id, case_target, layout, self.dataset, brats_subfolders)
            output_file = Path(output_folder) / name
            files = {c: p for c, p in case.files.items() if c != case_target}
            jobs.append(CaseJob(case.case_id, files, case_target, output_file,
                                Path(output_folder) / uncertainty_file_name(name) if save_uncertainty else None,
                                cascade=steps))
        return layout, jobs, problems, failed

    def check_cases(self, input_folder: Path | str, output_folder: Path | str, target: str | None = "auto",
                    brats_subfolders: bool = False, save_uncertainty: bool = False,
                    cases: Sequence[str] | None = None, continue_prediction: bool = False,
                    executor: Executor | None = None) -> list[CaseJob]:
        """:meth:`plan_cases`, and read every input file of the cases to predict (readable, whole, finite, 3D,
        one grid per case) and check the outputs can be written; raise one :class:`InputLayoutError` listing
        every problem (see :mod:`synthunet.inference.checks`). Return every planned job (also finished ones).
        ``executor``: the processes that read the files (None: this process)."""
        _, jobs, problems, failed = self._plan_cases(input_folder, output_folder, target, brats_subfolders,
                                                     save_uncertainty, cases)
        todo = [job for job in jobs if not (continue_prediction and job.is_done())]
        outputs = [path for job in todo for path in (job.uncertainty_file, job.output_file) if path is not None]
        to_read = [(job.case_id, job.files) for job in todo] + [(case.case_id, case.files) for case in failed]
        found = [(message, InputLayoutError.hint) for message in problems]
        found += check_before_writing(to_read, Path(output_folder), outputs, executor)
        raise_problems(found, InputLayoutError, f"in {input_folder} (output {output_folder})")
        return jobs

    def _preprocess_cascade_job(self, job: CaseJob, preprocessing: CasePreprocessing
                                ) -> tuple[np.ndarray, dict, Geometry]:
        """Read a case, synthesise its missing inputs with the cascade models, preprocess for the target."""
        images, geometry = read_case_images(job.case_id, job.files)
        try:
            images = self.cascade_fill(images, geometry, job.cascade, progress=self.verbose)
            data, properties = preprocessing.preprocess(images, geometry)
        except Exception as error:  # a user-facing problem names the case; a bug keeps its traceback
            raise_for_case(job.case_id, error)
        return data, properties, geometry

    def predict_from_files(self, input_folder: Path | str, output_folder: Path | str, target: str | None = "auto",
                           save_uncertainty: bool = False, brats_subfolders: bool = False,
                           continue_prediction: bool = False, num_processes_preprocessing: int = 2,
                           num_processes_export: int = 2, progress: bool = True,
                           cases: Sequence[str] | None = None, check_inputs: bool = True) -> list[Path]:
        """Predict every case of ``input_folder`` (or only ``cases``) into ``output_folder``; return the files
        written.

        ``num_processes_*`` = 0 runs that stage in this process. With ``continue_prediction`` cases whose
        outputs exist are skipped (outputs are written atomically, so an existing file is complete).
        Before anything is written, every case and the output folder are checked (:meth:`check_cases`; skip
        with ``check_inputs=False`` when the caller has done so) and the temporary files of the outputs that a
        killed earlier run left behind are removed.
        """
        input_folder, output_folder = Path(input_folder), Path(output_folder)
        if output_folder.resolve() == input_folder.resolve():
            raise InputError("The output folder must differ from the input folder")
        with make_executor(num_processes_preprocessing) as pre_pool, make_executor(num_processes_export) as export_pool:
            if check_inputs:
                jobs = self.check_cases(input_folder, output_folder, target, brats_subfolders, save_uncertainty,
                                        cases, continue_prediction, pre_pool)
            else:
                _, jobs = self.plan_cases(input_folder, output_folder, target, brats_subfolders, save_uncertainty,
                                          cases)
            remove_stale_temporaries([p for job in jobs for p in (job.output_file, job.uncertainty_file) if p])
            if continue_prediction:
                done = [job for job in jobs if job.is_done()]
                if done:
                    logger.info("Skipping %d finished case(s)", len(done))
                jobs = [job for job in jobs if not job.is_done()]
            output_folder.mkdir(parents=True, exist_ok=True)
            preprocessings = {t: self.preprocessing(t) for t in {job.target for job in jobs}}
            # cascade jobs need the networks: they are preprocessed here, in turn
            return run_case_pipeline(
                jobs,
                submit_preprocessing=lambda job: None if job.cascade else pre_pool.submit(
                    read_and_preprocess, job.case_id, job.files, preprocessings[job.target]),
                preprocess_here=lambda job: self._preprocess_cascade_job(job, preprocessings[job.target]),
                predict=lambda job, data, _: self.predict_preprocessed(data, job.target, with_std=save_uncertainty,
                                                                       progress=self.verbose),
                submit_export=lambda job, prediction, properties, geometry: export_pool.submit(
                    export_prediction, *prediction, properties, preprocessings[job.target], geometry,
                    job.output_file, job.uncertainty_file),
                num_processes_preprocessing=num_processes_preprocessing, num_processes_export=num_processes_export,
                progress=progress, describe=lambda job: f"{job.case_id} -> {job.target}")
