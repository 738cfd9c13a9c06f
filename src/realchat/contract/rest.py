"""REST bodies of the contract, as pydantic models: they validate requests and generate the
OpenAPI document, so the document cannot drift from what is served."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

USERNAME_PATTERN = r"^[a-z0-9_.-]{3,32}$"


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class Credentials(BaseModel):
    model_config = ConfigDict(extra="ignore")
    username: str = Field(pattern=USERNAME_PATTERN)
    password: str = Field(min_length=8, max_length=128)


class UserOut(BaseModel):
    user_id: str
    username: str


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class CreateConversation(BaseModel):
    model_config = ConfigDict(extra="ignore")
    member_ids: list[str] = Field(default_factory=list)
    title: str | None = Field(default=None, max_length=200)


class AddMembers(BaseModel):
    model_config = ConfigDict(extra="ignore")
    user_ids: list[str] = Field(min_length=1)


class SendMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    client_msg_id: str = Field(min_length=1, max_length=64)
    content: str = Field(min_length=1, max_length=4000)


class RenameConversation(BaseModel):
    model_config = ConfigDict(extra="ignore")
    title: str = Field(max_length=200)


class EditMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    #: The client's id for this edit: a retry with the same id and content is the same edit.
    client_change_id: str = Field(min_length=1, max_length=64)
    content: str = Field(min_length=1, max_length=4000)


class ConversationOut(BaseModel):
    conversation_id: str
    title: str | None
    member_ids: list[str]
    created_at: datetime
    last_seq: int
    #: The caller's read position: the highest seq any of their devices acknowledged.
    acked_seq: int = 0
    #: Messages after `acked_seq` that others sent (the caller's own count as read), at most
    #: 1000 (show "999+" beyond).
    unread_count: int = 0


class ConversationsOut(BaseModel):
    """A page of the caller's conversations, by conversation id."""

    conversations: list[ConversationOut]
    #: Pass as `cursor` for the next page; null on the last page.
    next_cursor: str | None = None


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="ignore")
    current_password: str
    new_password: str = Field(min_length=8, max_length=128)


class BlockedOut(BaseModel):
    """Users the caller blocked (oldest first)."""

    user_ids: list[str]


class MessageOut(BaseModel):
    message_id: str
    conversation_id: str
    seq: int
    sender_id: str
    content: str
    created_at: datetime
    #: 1 when sent, +1 per edit or delete (left out while 1).
    version: int = 1
    #: When last edited or deleted (left out if never).
    edited_at: datetime | None = None
    #: A tombstone: deleted by its sender, content empty, seq kept (left out while false).
    deleted: bool = False


class MessagesOut(BaseModel):
    messages: list[MessageOut]
    last_seq: int


class PresenceOut(BaseModel):
    user_id: str
    status: Literal["online", "offline"]
    #: When the status was announced; None for a user never seen online.
    since: datetime | None


class PresencesOut(BaseModel):
    """Only the caller and users sharing a conversation with them; other ids are left out."""

    users: list[PresenceOut]
