"""Map the top-level folders onto one import root: ``events/`` -> ``threadline.events``.

The layout keeps ``events/``, ``services/`` and ``projections/`` at the top of the
repository (see DESIGN.md) while installing them as ``threadline.*`` so generic names
never collide in site-packages. Editable installs keep working (setuptools maps them).
"""

from setuptools import find_packages, setup

ROOTS = ("base", "events", "services", "projections")

packages: list[str] = []
package_dir: dict[str, str] = {}
for root in ROOTS:
    package_dir[f"threadline.{root}"] = root
    packages.append(f"threadline.{root}")
    packages.extend(f"threadline.{root}.{sub}" for sub in find_packages(root))

setup(packages=packages, package_dir=package_dir)
