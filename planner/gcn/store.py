"""Finding the ToO OB a GCN event already became: the deduplication that survives restarts lives in the OB store."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from planner.store import ObPublic, ObservingBlock, ObType

# Keys of the OB's setup that carry the notice it came from.
EVENT_KEY = "gcn_event"
MESSAGE_KEY = "gcn_message"
REFINED_KEY = "gcn_refined_by"  # the message of the last position refinement


class GcnObIndex:
    """The OBs created from GCN notices, by event key (the OB store keeps them; this only looks them up)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def find(self, *, name: str, event_key: str) -> ObPublic | None:
        """The OB created for `event_key` (any state), or None."""
        query = select(ObservingBlock).where(ObservingBlock.ob_type == ObType.TOO, ObservingBlock.name == name)
        with self._sessions() as session:
            for row in session.scalars(query.order_by(ObservingBlock.id)).all():
                if row.setup.get(EVENT_KEY) == event_key:
                    return ObPublic.model_validate(row)
        return None
