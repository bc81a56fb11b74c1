"""mclfir: continual fine-grained fashion image retrieval.

Importing the package sets the offline switches of the stack (Hugging Face Hub, Prefect,
MLflow, DVC) unless the environment already sets them, so that no step waits on a network
that is not there. Set ``HF_HUB_OFFLINE=0`` to let timm or the download step reach the hub.
"""

from mclfir.offline import apply_offline_defaults

apply_offline_defaults()

__version__ = "0.1.0"
