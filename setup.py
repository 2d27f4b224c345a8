"""Only the build step pyproject.toml cannot say: ship the top-level conf/ inside the wheel as medtune/conf."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithConf(build_py):
    """conf/ stays the one source of the config groups; a wheel carries a copy (an editable install reads conf/)."""

    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            shutil.copytree("conf", Path(self.build_lib) / "medtune" / "conf", dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildPyWithConf})
