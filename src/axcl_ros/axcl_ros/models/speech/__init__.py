"""Speech stream processing without ROS: VAD segmentation (:mod:`.segmenter`) and the segment -> transcript
pipeline with its worker thread (:mod:`.pipeline`)."""
