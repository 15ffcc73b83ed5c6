"""The Gradio front end of WorldStitch: the form declared once (``form``), the job runner (``runner``), the page
(``layout``) and the server settings (``settings``). ``app.py`` is the entry point; ``pipeline`` never imports
this package."""
