"""Generated gRPC code for `api/proto/realchat/chat/v1/chat.proto` (built by `make deps`)."""
