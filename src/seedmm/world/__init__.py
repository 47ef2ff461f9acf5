"""The shapes world (docs/world.md): scenes, rendering, canonical text, tasks and the judge."""

from .judge import (
    AttributeTally, box_iou, exact_match, geneval_categories, object_precision_recall, parse_answer, parse_box,
    parse_caption, parse_difference, parse_direction, parse_instruction, read_objects, read_scene,
)
from .render import degrade, render, render_video
from .scene import (
    COLOURS, DEFAULT_CANVAS, POSITIONS, SHAPES, SIZES, WORLD_VERSION, Obj, Scene, WorldError, check_canvas,
    make_object, min_canvas, sample_scene, scene_from,
)
from .tasks import (
    EDIT_KINDS, QUESTION_KINDS, Edit, Question, Story, Video, apply_edit, box_bins, box_text, grounding_question,
    sample_anyres_scene, sample_edit, sample_question, sample_story, sample_video,
)
from .text import caption, object_phrase, paraphrase_caption, position_phrase
