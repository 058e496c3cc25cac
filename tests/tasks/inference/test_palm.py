"""The palm detector: its anchors, palms on a real hand, none on a real face or a blank wall."""

from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data
from support.boxes import share_inside
from support.scenes import face_beside_photo

from tasks.inference.landmarks import LANDMARK_NETWORK, LandmarkError
from tasks.inference.palm import PalmDetector, anchors


@pytest.fixture(scope="module")
def detector(landmarker_task: Path) -> PalmDetector:
    return PalmDetector(landmarker_task)


def test_anchors_are_the_cells_of_two_grids() -> None:
    centres = anchors()
    assert centres.shape == (2016, 2), "24×24 cells × 2 and 12×12 cells × 6"
    assert (centres > 0).all() and (centres < 1).all()
    assert np.allclose(centres[:2], 0.5 / 24), "the first cell of the fine grid, twice"
    assert np.allclose(centres[1152:1158], 0.5 / 12), "the first cell of the coarse grid, 6 times"
    assert np.allclose(centres[-1], 1 - 0.5 / 12)


def test_the_palm_of_a_real_hand_is_found_and_its_region_holds_the_hand(
    detector: PalmDetector, shared_dataset: Path
) -> None:
    scene, face, hand = face_beside_photo(shared_dataset)
    palms = detector.detect(scene)
    assert len(palms) == 1, "one hand, one palm; the face is none"
    palm = palms[0]
    assert palm.score > 0.5
    assert share_inside(palm.box, hand) > 0.9, "the palm lies on the hand"
    assert share_inside(hand, palm.hand_region()) > 0.8, "the region the landmarks read holds it"
    assert share_inside(palm.box, face) == 0
    assert palm.keypoints.shape == (7, 2)


def test_a_face_or_a_blank_wall_has_no_palm(detector: PalmDetector) -> None:
    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    assert detector.detect(astronaut) == []
    assert detector.detect(np.full((480, 640, 3), 128, np.uint8)) == []


def test_a_bundle_without_the_palm_network_is_named(tmp_path: Path) -> None:
    only_landmarks = tmp_path / "hand_landmarker.task"
    with zipfile.ZipFile(only_landmarks, "w") as bundle:
        bundle.writestr(LANDMARK_NETWORK, b"landmarks only")
    with pytest.raises(LandmarkError, match=str(only_landmarks)):
        PalmDetector(only_landmarks)
