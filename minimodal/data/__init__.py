"""Data for the course: the generated shapes world, easy-vqa, real photos, CLIP preprocessing."""

from minimodal.data.easy_vqa import EasyVQA, load_easy_vqa
from minimodal.data.photos import PHOTOS, load_photo, load_photos
from minimodal.data.shapes import QA, ShapesBatch, ShapesConfig, ShapesDataset, ShapesWorld
from minimodal.data.transforms import clip_preprocess, clip_preprocess_batch, clip_unnormalize

__all__ = ["EasyVQA", "load_easy_vqa", "PHOTOS", "load_photo", "load_photos", "QA", "ShapesBatch",
           "ShapesConfig", "ShapesDataset", "ShapesWorld", "clip_preprocess",
           "clip_preprocess_batch", "clip_unnormalize"]
