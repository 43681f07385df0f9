"""The workflow template language: expr-lang expressions in `{{ }}` tags, on Jinja2."""
