//! Chat messages and tool definitions in the shapes `async-openai` sends.

use async_openai::types::chat::{
    ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls, ChatCompletionRequestAssistantMessageArgs,
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessageArgs, ChatCompletionRequestToolMessageArgs,
    ChatCompletionRequestUserMessageArgs, ChatCompletionTool, ChatCompletionTools, FunctionCall, FunctionObjectArgs,
};

use crate::agent::tools::ToolDef;

/// A tool call assembled from a stream.
#[derive(Debug, Clone, Default)]
pub(super) struct Call {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

pub(super) fn system(text: &str) -> ChatCompletionRequestMessage {
    ChatCompletionRequestSystemMessageArgs::default().content(text).build().expect("a system message").into()
}

pub(super) fn user(text: &str) -> ChatCompletionRequestMessage {
    ChatCompletionRequestUserMessageArgs::default().content(text).build().expect("a user message").into()
}

pub(super) fn assistant(text: &str, calls: &[Call]) -> ChatCompletionRequestMessage {
    let mut b = ChatCompletionRequestAssistantMessageArgs::default();
    if !text.is_empty() {
        b.content(text);
    }
    if !calls.is_empty() {
        b.tool_calls(
            calls
                .iter()
                .map(|c| {
                    ChatCompletionMessageToolCalls::Function(ChatCompletionMessageToolCall {
                        id: c.id.clone(),
                        function: FunctionCall { name: c.name.clone(), arguments: c.arguments.clone() },
                    })
                })
                .collect::<Vec<_>>(),
        );
    }
    b.build().expect("an assistant message").into()
}

pub(super) fn tool(id: &str, content: &str) -> ChatCompletionRequestMessage {
    ChatCompletionRequestToolMessageArgs::default()
        .content(content)
        .tool_call_id(id)
        .build()
        .expect("a tool message")
        .into()
}

pub(super) fn tool_defs(defs: &[ToolDef]) -> Vec<ChatCompletionTools> {
    defs.iter()
        .map(|d| {
            ChatCompletionTools::Function(ChatCompletionTool {
                function: FunctionObjectArgs::default()
                    .name(d.name)
                    .description(d.description.clone())
                    .parameters(d.parameters.clone())
                    .build()
                    .expect("a function definition"),
            })
        })
        .collect()
}
