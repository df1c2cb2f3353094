"""LLM processors: ``openai.OpenAIProcessor`` (any OpenAI-compatible server) and
``scripted.ScriptedProcessor`` (tests); ``jsonfix`` repairs the arguments weak models write."""
