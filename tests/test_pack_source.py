"""The pack reader reads only through its PackSource port: a pack held in memory reads exactly
as the same files in a folder, and its problems name the file and line of the text given."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from processors.pack import read_pack
from processors.tool_policy import ToolPolicy
from sinks.pack_files import inspect_pack
from sinks.python_tools import import_tool

EXAMPLE = Path(__file__).resolve().parents[1] / "packs" / "acme-shop" / "support"


@dataclass
class MemoryPack:
    """A pack as a dict of file name -> text: no file system behind it."""

    files: dict[str, str]
    place_: tuple[str, str] = ("acme-shop", "support")

    @property
    def location(self) -> str:
        return "<memory>"

    def is_pack(self) -> bool:
        return True

    def place(self) -> tuple[str, str]:
        return self.place_

    def entries(self, folder: str) -> list[str]:
        prefix = f"{folder}/" if folder else ""
        names = {f.removeprefix(prefix).split("/")[0] for f in self.files if f.startswith(prefix)}
        return sorted(names)

    def is_file(self, file: str) -> bool:
        return file in self.files

    def size(self, file: str) -> int:
        return len(self.files[file].encode())

    def read(self, file: str) -> str:
        if file not in self.files:
            raise IsADirectoryError(file)
        return self.files[file]


def example_in_memory() -> MemoryPack:
    files = {
        str(path.relative_to(EXAMPLE)): path.read_text(encoding="utf-8")
        for path in EXAMPLE.rglob("*")
        if path.is_file()
    }
    return MemoryPack(files)


def test_a_pack_in_memory_reads_as_the_same_files_in_a_folder() -> None:
    policy = ToolPolicy()
    folder = inspect_pack(EXAMPLE, policy)
    memory = read_pack(example_in_memory(), policy, lambda path: import_tool(policy, path))
    assert memory.problems == folder.problems
    assert memory.pack is not None and memory.pack == folder.pack


def test_problems_name_the_file_and_line_of_the_text_the_source_gave() -> None:
    source = example_in_memory()
    rules = source.files["rules.yaml"]
    source.files["rules.yaml"] = rules.replace("  - id: ", "  - idd: ", 1)
    line = rules[: rules.index("  - id: ")].count("\n") + 1
    report = read_pack(source, ToolPolicy())
    assert report.pack is None
    unknown = [p for p in report.problems if p.code == "unknown_key"]
    assert [(p.file, p.line) for p in unknown] == [("rules.yaml", line)]


def test_a_source_without_agent_yaml_is_reported_not_raised() -> None:
    source = example_in_memory()
    del source.files["agent.yaml"]
    report = read_pack(source, ToolPolicy())
    assert report.pack is None
    assert ("agent.yaml", "missing_file") in {(p.file, p.code) for p in report.problems}
