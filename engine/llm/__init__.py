"""Optional LLM narration: rephrase an incident in prose, never add to it.

`Narrator.from_env()` builds the narrator (None when INCIDENT_PILOT_LLM_PROVIDER is unset);
`Narrator.narrate(incident)` returns the prose when every concrete claim in it is grounded
in the structured incident, else the template narration with the reason it was rejected.
"""

from engine.llm.config import LLMConfig, LLMConfigError
from engine.llm.narrator import Narrator

__all__ = ["LLMConfig", "LLMConfigError", "Narrator"]
