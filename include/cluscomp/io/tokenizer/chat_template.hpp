#pragma once
/// Chat prompt formatting for the templates models declare. There is no Jinja engine here: the
/// template source is recognised by its content, and only the ChatML family (SmolLM, Qwen, ...)
/// is supported; anything else is a clear kUnsupported error.

#include <string>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// One chat turn: role ("system", "user", "assistant", ...) and its text.
struct ChatMessage {
  std::string role;
  std::string content;
};

/// The kinds of chat template we can apply.
enum class ChatTemplateKind { kNone, kChatMl, kUnknown };

/// Classifies a Jinja chat template by content: ChatML when it emits <|im_start|> and <|im_end|>.
inline ChatTemplateKind detect_chat_template(const std::string& tmpl) {
  if (tmpl.empty()) return ChatTemplateKind::kNone;
  if (tmpl.find("<|im_start|>") != std::string::npos && tmpl.find("<|im_end|>") != std::string::npos)
    return ChatTemplateKind::kChatMl;
  return ChatTemplateKind::kUnknown;
}

/// The default system message a ChatML template inserts when the conversation does not start
/// with one (SmolLM2: "You are a helpful AI assistant named SmolLM, trained by Hugging Face"), or
/// "" when the template has none: a literal "<|im_start|>system\n...<|im_end|>" in the source.
inline std::string chat_ml_default_system(const std::string& tmpl) {
  const std::string open = "<|im_start|>system\n";
  const size_t a = tmpl.find(open);
  if (a == std::string::npos) return "";
  const size_t b = tmpl.find("<|im_end|>", a + open.size());
  if (b == std::string::npos) return "";
  const std::string body = tmpl.substr(a + open.size(), b - a - open.size());
  // A literal message has no template syntax in it.
  if (body.find("{{") != std::string::npos || body.find("{%") != std::string::npos ||
      body.find('\'') != std::string::npos)
    return "";
  return body;
}

/// Formats `messages` with the template `tmpl` (see detect_chat_template):
/// ChatML: [default system turn when the first message is not "system" and the template has one]
/// then "<|im_start|>ROLE\nCONTENT<|im_end|>\n" per message, then "<|im_start|>assistant\n" when
/// `add_generation_prompt`. Empty or unrecognised template: Error(kUnsupported). Deterministic.
inline std::string apply_chat_template(const std::string& tmpl, const std::vector<ChatMessage>& messages,
                                       bool add_generation_prompt) {
  switch (detect_chat_template(tmpl)) {
    case ChatTemplateKind::kNone:
      throw Error(StatusCode::kUnsupported, "the model declares no chat template");
    case ChatTemplateKind::kUnknown:
      throw Error(StatusCode::kUnsupported,
                  "the model's chat template is not a recognised kind (only ChatML "
                  "<|im_start|>/<|im_end|> templates are supported); template begins: " +
                      tmpl.substr(0, 120));
    case ChatTemplateKind::kChatMl:
      break;
  }
  std::string out;
  const std::string sys = chat_ml_default_system(tmpl);
  if (!sys.empty() && !messages.empty() && messages[0].role != "system")
    out += "<|im_start|>system\n" + sys + "<|im_end|>\n";
  for (const ChatMessage& m : messages)
    out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

CLUSCOMP_NAMESPACE_END
