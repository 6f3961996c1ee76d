"""The pieces the project's HTML reports share: the page's look (`page`) and the plots drawn with
matplotlib (`plots`). The pipeline's evaluation report and the data-quality page use both."""
