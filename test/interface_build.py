"""
Build ``ackermann_msgs`` and ``carla_msgs`` from .msg files with colcon and the rosidl wheels.

The interface definitions live in test/interface_msgs (CarlaEgoVehicleControl comes from
llava_drive/msg); the package manifests and CMake files are written here. Needs the rosidl
generator and ament_cmake wheels, colcon-cmake, cmake and a C compiler in the interpreter's
environment; :func:`missing_tools` names what is not there.
"""
import importlib.util
import os
from pathlib import Path
import shutil
import subprocess
import sys
import sysconfig

ROOT = Path(__file__).resolve().parents[1]
MESSAGES = ROOT / 'test' / 'interface_msgs'
# package -> (message files, packages its messages use)
PACKAGES = {
    'ackermann_msgs': (['AckermannDrive', 'AckermannDriveStamped'], ['std_msgs']),
    'carla_msgs': (['CarlaEgoVehicleControl', 'CarlaRoute'], ['std_msgs', 'geometry_msgs']),
}
EXTRA_SOURCES = {('carla_msgs', 'CarlaEgoVehicleControl'):
                 ROOT / 'llava_drive' / 'msg' / 'CarlaEgoVehicleControl.msg'}

MANIFEST = """<?xml version="1.0"?>
<package format="3">
  <name>{name}</name>
  <version>0.0.0</version>
  <description>{name} interfaces, built for the llava_drive tests</description>
  <maintainer email="llava-drive@example.com">llava_drive developers</maintainer>
  <license>see the .msg headers</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
{depends}
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
"""
CMAKE = """cmake_minimum_required(VERSION 3.8)
project({name})
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
{finds}
rosidl_generate_interfaces(${{PROJECT_NAME}} {files} DEPENDENCIES {depends})
# The wheels' exported targets name the Python and NumPy headers of the machine that built
# them (/opt/python/...): point them at this interpreter's.
get_directory_property(imported IMPORTED_TARGETS)
foreach(target ${{imported}})
  get_target_property(dirs ${{target}} INTERFACE_INCLUDE_DIRECTORIES)
  if(dirs MATCHES "/opt/python/")
    list(FILTER dirs EXCLUDE REGEX "^/opt/python/")
    list(APPEND dirs ${{LOCAL_PYTHON_INCLUDES}})
    set_target_properties(${{target}} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${{dirs}}")
  endif()
endforeach()
ament_export_dependencies(rosidl_default_runtime)
ament_package()
"""


def missing_tools() -> list:
    """Return what the build needs and this environment lacks (empty: it can build)."""
    missing = [tool for tool in ('cmake', 'cc') if shutil.which(tool) is None]
    prefix = Path(sys.prefix)
    for package in ('ament_cmake', 'rosidl_default_generators',
                    'rosidl_typesupport_fastrtps_c', 'rosidl_generator_py'):
        if not (prefix / 'share' / package).is_dir():
            missing.append(f'{package} (wheel ros-{package.replace("_", "-")})')
    if importlib.util.find_spec('colcon_cmake') is None:
        missing.append('colcon-cmake')
    return missing


def write_packages(source: Path) -> None:
    """Write both interface packages into ``source`` (a colcon workspace's src)."""
    for name, (messages, depends) in PACKAGES.items():
        package = source / name
        (package / 'msg').mkdir(parents=True, exist_ok=True)
        for message in messages:
            origin = EXTRA_SOURCES.get((name, message), MESSAGES / name / 'msg' /
                                       f'{message}.msg')
            shutil.copy2(origin, package / 'msg' / f'{message}.msg')
        (package / 'package.xml').write_text(MANIFEST.format(
            name=name, depends='\n'.join(f'  <depend>{d}</depend>' for d in depends)))
        (package / 'CMakeLists.txt').write_text(CMAKE.format(
            name=name, finds='\n'.join(f'find_package({d} REQUIRED)' for d in depends),
            files=' '.join(f'"msg/{m}.msg"' for m in messages), depends=' '.join(depends)))


def build(workspace: Path, timeout: float = 900.0) -> subprocess.CompletedProcess:
    """Run ``colcon build`` of both packages in ``workspace``; return the finished process."""
    write_packages(workspace / 'src')
    prefix = Path(sys.prefix)
    env = {**os.environ, 'COLCON_HOME': str(workspace / '.colcon'),
           'CMAKE_PREFIX_PATH': os.pathsep.join(filter(None, [
               str(prefix), os.environ.get('CMAKE_PREFIX_PATH')])),
           'AMENT_PREFIX_PATH': os.pathsep.join(filter(None, [
               str(prefix), os.environ.get('AMENT_PREFIX_PATH')]))}
    import numpy
    includes = f'{sysconfig.get_paths()["include"]};{numpy.get_include()}'
    return subprocess.run(
        [sys.executable, '-m', 'colcon', 'build', '--base-paths', 'src', '--merge-install',
         '--cmake-args', f'-DPython3_EXECUTABLE={sys.executable}', '-DBUILD_TESTING=OFF',
         f'-DLOCAL_PYTHON_INCLUDES={includes}'],
        cwd=workspace, env=env, capture_output=True, text=True, timeout=timeout)


def environment(install: Path, base=None) -> dict:
    """Return an environment whose Python processes import the built interfaces."""
    env = dict(os.environ if base is None else base)
    version = f'python{sys.version_info.major}.{sys.version_info.minor}'
    for key, path in (('PYTHONPATH', install / 'lib' / version / 'site-packages'),
                      ('LD_LIBRARY_PATH', install / 'lib'),
                      ('AMENT_PREFIX_PATH', install)):
        env[key] = os.pathsep.join(filter(None, [str(path), env.get(key, '')]))
    return env
