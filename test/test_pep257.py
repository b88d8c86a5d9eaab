"""ament_pep257 over the package, as in ros2/examples."""
from ament_pep257.main import main
import pytest


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257():
    """Check docstring style with the ament pep257 configuration."""
    rc = main(argv=['.', 'test'])
    assert rc == 0, 'Found code style errors / warnings'
