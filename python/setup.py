"""Installs the pure-Python package; when the repository's build/libpacklm.so exists (run `make`
first), a copy of it goes into the package, so the installed package finds it without PACKLM_LIB.
No compiler runs here."""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class build_py_with_lib(build_py):
    def run(self):
        super().run()
        src = os.environ.get("PACKLM_LIB") or os.path.join(HERE, "..", "build", "libpacklm.so")
        if os.path.isfile(src):
            dst = os.path.join(self.build_lib, "packlm", "libpacklm.so")
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(src, dst)
            print("packlm: bundled %s" % os.path.abspath(src))
        else:
            print("packlm: no build/libpacklm.so to bundle; set PACKLM_LIB at run time")


setup(cmdclass={"build_py": build_py_with_lib})
