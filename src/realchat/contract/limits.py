"""The numbers of the public contract: every bound a client can run into, defined here once.

The chat and auth services enforce them, the gateway checks what it can before a call, the
OpenAPI document states them (`contract/routes.py`) and the SDK keeps to them.
"""

from __future__ import annotations

#: A message's content, in characters (code points), not bytes.
MAX_CONTENT_CHARS = 4000
#: A `client_msg_id` (and an edit's `client_change_id`): the client's idempotency key.
MAX_CLIENT_MSG_ID_CHARS = 64
#: A conversation's title (empty: no title).
MAX_TITLE_CHARS = 200

#: Messages per history page (`limit` of `GET .../messages`, and a sync's pages).
DEFAULT_HISTORY_LIMIT = 100
MAX_HISTORY_LIMIT = 500
#: Conversations per page of `GET /v1/conversations`.
DEFAULT_CONVERSATIONS_PAGE = 100
MAX_CONVERSATIONS_PAGE = 200
#: User ids one presence request may name.
MAX_PRESENCE_USERS = 100
#: Blocked users listed at most (a longer list is cut: it is the blocker's own doing).
MAX_BLOCKED_LISTED = 1000
#: Unread messages counted at most per conversation (a client shows "999+" beyond).
MAX_UNREAD_COUNTED = 1000

#: A seq, a position or a cursor as the chat service stores it: a signed 64-bit integer.
MAX_SEQ = 2**63 - 1
MIN_SEQ = -(2**63)

#: Usernames: 3-32 characters of this alphabet, once ASCII upper-case is folded to lower-case.
USERNAME_ALPHABET = "a-z0-9_.-"
MIN_USERNAME_CHARS = 3
MAX_USERNAME_CHARS = 32
#: What a username may be as sent (before folding), as a regular expression.
USERNAME_PATTERN = f"^[A-Z{USERNAME_ALPHABET}]{{{MIN_USERNAME_CHARS},{MAX_USERNAME_CHARS}}}$"
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 128

#: A push token as a platform hands it out.
MAX_PUSH_TOKEN_CHARS = 4096

#: The largest REST request body (anything bigger is 413 `request_too_large` unread).
MAX_BODY_BYTES = 64 * 1024
