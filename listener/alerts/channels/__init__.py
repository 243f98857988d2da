"""Alert channels: one module per kind, behind a registry like the source kinds'.

`base` is the contract every kind follows (options, channel object, sender, `Delivery`) and the
registry; `slack`, `email` and `webhook` are the built-in kinds, one module each, registered when
this package is imported; `http` is how the HTTP kinds post. A kind of your own is one module
that calls `register_channel` (tests/test_channel_kinds.py). What the rest of listener uses is
importable from here.
"""

from __future__ import annotations

from .base import DEFAULT_SLACK_LIMITER as DEFAULT_SLACK_LIMITER
from .base import SLACK_BURST as SLACK_BURST
from .base import Channel as Channel
from .base import ChannelKind as ChannelKind
from .base import ChannelOptions as ChannelOptions
from .base import ChannelSender as ChannelSender
from .base import Delivery as Delivery
from .base import SlackRateLimiter as SlackRateLimiter
from .base import channel_kind as channel_kind
from .base import channel_kind_names as channel_kind_names
from .base import register_channel as register_channel
from .base import send_alert as send_alert
from .base import unregister_channel as unregister_channel

# The built-in kinds register as they are imported, in this order: the order `check` lists the
# known kinds in. (Each import is its own block so that sorting imports keeps the order.)
# isort: split
from .slack import SlackChannel as SlackChannel

# isort: split
from .email import EmailChannel as EmailChannel

# isort: split
from .webhook import WebhookChannel as WebhookChannel
