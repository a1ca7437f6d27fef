"""The pack's model folder in ComfyUI (models/anitalker, and extra_model_paths.yaml entries), its file lists
and safe lookups of what a dropdown names; and the face-restoration folder other packs use."""

from __future__ import annotations

import os
import uuid

from ..anitalker_core.weights.files import FOLDER_NAME, HUBERT_DIR, resolve_inside, source_of

WEIGHT_EXTENSIONS = {".ckpt", ".safetensors", ".pt", ".pth"}
FACE_FOLDER = "facerestore_models"
"""Where other face-restore packs keep GFPGAN and CodeFormer files."""
UPSCALE_FOLDER = "upscale_models"


def register_model_folder() -> None:
    """models/anitalker, listed like ComfyUI's other model folders (extra_model_paths.yaml works too)."""
    import folder_paths

    default = os.path.join(folder_paths.models_dir, FOLDER_NAME)
    if FOLDER_NAME in folder_paths.folder_names_and_paths:
        paths, exts = folder_paths.folder_names_and_paths[FOLDER_NAME]
        if default not in paths:
            paths.append(default)
        folder_paths.folder_names_and_paths[FOLDER_NAME] = (paths, set(exts) | WEIGHT_EXTENSIONS)
    else:
        folder_paths.folder_names_and_paths[FOLDER_NAME] = ([default], set(WEIGHT_EXTENSIONS))


def register_face_folder() -> None:
    """models/facerestore_models, when it exists (and any folder another pack registered under that name): known
    to ComfyUI under that name and listed by Load Upscale Model, which is where the pack takes face models from."""
    import folder_paths

    default = os.path.join(folder_paths.models_dir, FACE_FOLDER)
    paths, exts = folder_paths.folder_names_and_paths.get(FACE_FOLDER, ([], set()))
    if os.path.isdir(default) and default not in paths:
        paths.append(default)
    if not paths or UPSCALE_FOLDER not in folder_paths.folder_names_and_paths:
        return
    folder_paths.folder_names_and_paths[FACE_FOLDER] = (paths, set(exts) | WEIGHT_EXTENSIONS)
    upscale_paths = folder_paths.folder_names_and_paths[UPSCALE_FOLDER][0]
    upscale_paths.extend(p for p in paths if p not in upscale_paths)


def model_folders() -> list[str]:
    import folder_paths

    register_model_folder()
    return folder_paths.get_folder_paths(FOLDER_NAME)


def weight_files(prefix: str = "") -> list[str]:
    """The weight files in the model folders, those starting with ``prefix`` first choice."""
    import folder_paths

    register_model_folder()
    names = folder_paths.get_filename_list(FOLDER_NAME)
    picked = [n for n in names if os.path.basename(n).startswith(prefix)] if prefix else list(names)
    return picked or names


def hubert_folders() -> list[str]:
    found = []
    for root in model_folders():
        if os.path.isdir(root):
            for name in sorted(os.listdir(root)):
                if os.path.isfile(os.path.join(root, name, "config.json")):
                    found.append(name)
    return found


def find_model(name: str, what: str) -> str:
    """Full path of a file or folder chosen in a dropdown, never outside the model folders."""
    folders = model_folders()
    for root in folders:
        path = resolve_inside(root, name)  # raises on '..' and absolute paths
        if path.exists():
            return str(path)
    where = folders[0] if folders else "ComfyUI/models/anitalker"
    is_hubert = not name.startswith("stage") and "hubert" in name.lower()
    source = source_of(HUBERT_DIR if is_hubert else name)
    raise FileNotFoundError(f"{what} '{name}' was not found. Put it in {where} (download it from {source}) "
                            "and press R in ComfyUI to refresh the lists")


def new_output_path(filename_prefix: str, suffix: str = "") -> tuple[str, str, str]:
    """(path, subfolder, name) of a new output by ComfyUI's own naming: ``<prefix>_<counter>`` (with ``suffix``,
    e.g. "_.mov", for a file), the counter after the highest in use; %date% patterns and subfolders work, nothing
    outside the output folder."""
    import folder_paths

    folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(filename_prefix,
                                                                           folder_paths.get_output_directory())
    os.makedirs(folder, exist_ok=True)
    base = f"{name}_{counter:05}"
    return os.path.join(folder, base + suffix), subfolder, name


def temp_video_path(suffix: str = ".mp4") -> str:
    """A new file name in ComfyUI's temporary folder (emptied when ComfyUI starts), for a video rendered to be
    read back as a stream."""
    import folder_paths

    folder = folder_paths.get_temp_directory()
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, f"anitalker_{uuid.uuid4().hex}{suffix}")
