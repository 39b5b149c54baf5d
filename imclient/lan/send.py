"""Our own messages while they are held: fragments, who still lacks them, and what to re-send.

Plain data, no timers: the core owns the retransmission timer of each message and asks this
module which fragments to send and which members have gone quiet.
"""
from imclient.lan.codec import ALL_FRAGMENTS, FRAGMENT_SIZE, MAX_FRAGMENTS


def fragment(body):
    """Split ``body`` into at most MAX_FRAGMENTS pieces of FRAGMENT_SIZE bytes (at least one)."""
    pieces = [body[i:i + FRAGMENT_SIZE] for i in range(0, len(body), FRAGMENT_SIZE)] or [b""]
    if len(pieces) > MAX_FRAGMENTS:
        raise ValueError(f"message of {len(body)} bytes is larger than "
                         f"{MAX_FRAGMENTS * FRAGMENT_SIZE} bytes")
    return pieces


class Outgoing:
    """One message we sent, held until every member it was sent to has it.

    ``pending`` maps each member still lacking it to the fragments it last said it lacks
    (``None``: it has not said, assume all). ``silent`` counts retransmission rounds in which
    that member acknowledged nothing of ours at all.
    """

    def __init__(self, seq, pieces, members, acks_heard):
        self.seq = seq
        self.pieces = pieces
        self.pending = {m: None for m in members}
        self.silent = dict.fromkeys(members, 0)
        self._acks_seen = {m: acks_heard(m) for m in members}
        self.tries = 0
        self.timer = None
        self._sent_at = {}

    def done(self):
        return not self.pending

    def forget(self, member):
        self.pending.pop(member, None)
        self.silent.pop(member, None)

    def apply_ack(self, member, cumulative, top, missing):
        """Take one ack entry from ``member``; return the fragment indexes it asks for (NAK)."""
        if member not in self.pending:
            return []
        if self.seq <= cumulative:
            self.forget(member)
            return []
        if self.seq > top:
            return []
        wanted = [frag for seq, frag in missing if seq == self.seq]
        if not wanted:
            self.forget(member)
            return []
        if ALL_FRAGMENTS in wanted:
            wanted = list(range(len(self.pieces)))
        self.pending[member] = set(wanted)
        return wanted

    def sendable(self, indexes, now, holdoff):
        """Those of ``indexes`` not sent within ``holdoff`` seconds; marks them sent ``now``."""
        out = [i for i in indexes
               if i not in self._sent_at or now - self._sent_at[i] >= holdoff]
        for i in out:
            self._sent_at[i] = now
        return out

    def round_indexes(self):
        """The fragments a timer round re-sends: all that any pending member may lack."""
        wanted = set()
        for lacks in self.pending.values():
            if lacks is None:
                return list(range(len(self.pieces)))
            wanted |= lacks
        return sorted(wanted)

    def count_silence(self, acks_heard):
        """Start a retransmission round: bump ``silent`` for members that acked nothing since."""
        for member in self.pending:
            heard = acks_heard(member)
            if heard == self._acks_seen.get(member):
                self.silent[member] += 1
            else:
                self.silent[member] = 0
            self._acks_seen[member] = heard
        self.tries += 1

    def quiet_members(self, max_silent):
        return [m for m, n in self.silent.items() if n >= max_silent]
