"""Chat templates rendered by transformers (Jinja2), for kit's minijinja renderer.

Run from the repository root after `kit fetch`:
    python tests/oracle/make_chat_template_fixtures.py
Writes tests/fixtures/chat_templates.json.

Templates: SmolLM2's, read from its GGUF (`tokenizer.chat_template`), and three of our own written in the styles that
published templates use (system turn folded into the first user turn with `messages[1:]` and `raise_exception` for
alternation; a ChatML template with a default system prompt and `namespace`; one exercising `trim`, Python string
methods, `loop` variables and `tojson`). transformers renders each with `apply_chat_template(tokenize=False)`.
"""
import json
import os

import transformers
from transformers import AutoTokenizer

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "chat_templates.json")

FOLDED_SYSTEM = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)

CHATML_DEFAULT_SYSTEM = """{%- set ns = namespace(has_system=false) %}
{%- for message in messages %}
    {%- if message.role == 'system' %}{% set ns.has_system = true %}{% endif %}
{%- endfor %}
{%- if not ns.has_system %}
    {{- '<|im_start|>system\\nあなたは親切なアシスタントです。<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
    {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

FEATURES = """{% for message in messages %}
{% if loop.first and message.role != 'system' %}[no system]
{% endif %}
{{ loop.index }}/{{ loop.length }} {{ message.role | upper }}: {{ message.content.strip() }}
{% if message.content.startswith('ねこ') %}(cat!){% endif %}
{% if message.role == 'assistant' and not loop.last %}---
{% endif %}
{% endfor %}
{{ messages | length }} {{ messages[-1].content | tojson }}
{% if add_generation_prompt %}ASSISTANT:{% endif %}"""

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "ねこはかわいい？"}, {"role": "assistant", "content": "はい、とてもかわいいです。"},
     {"role": "user", "content": "  いぬは？  "}],
    [{"role": "system", "content": "日本語で答えてください。"}, {"role": "user", "content": "日本の首都は？"},
     {"role": "assistant", "content": "東京です。"}, {"role": "user", "content": "大阪は？"}],
    [{"role": "user", "content": "ねこ\nと\nいぬ"}, {"role": "assistant", "content": "  Both are lovely.  "}],
    [{"role": "user", "content": "Quote: \"hi\" & <tag>"}],
]
BAD = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]


def main():
    home = os.environ.get("KIT_HOME", os.path.join(os.path.expanduser("~"), ".cache", "kit"))
    smol = AutoTokenizer.from_pretrained(os.path.join(home, "models"), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    templates = {"smollm2": smol.chat_template, "folded_system": FOLDED_SYSTEM,
                 "chatml_default_system": CHATML_DEFAULT_SYSTEM, "features": FEATURES}
    cases = []
    for name, template in templates.items():
        smol.chat_template = template
        for conv in CONVERSATIONS + [BAD]:
            for gen in [False, True]:
                case = {"template": name, "messages": conv, "add_generation_prompt": gen}
                try:
                    case["expected"] = smol.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
                except Exception as e:  # transformers raises TemplateError for raise_exception
                    case["error"] = str(e)
                cases.append(case)
    record = {"transformers": transformers.__version__, "bos_token": smol.bos_token, "eos_token": smol.eos_token,
              "templates": templates, "cases": cases}
    with open(OUT, "w") as f:
        json.dump(record, f, ensure_ascii=False, indent=1)
    print(len(cases), "cases;", sum("error" in c for c in cases), "errors")


if __name__ == "__main__":
    main()
