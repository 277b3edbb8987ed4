import pytest

from sslsep.data.labels import find_labels_csv, parse_labels

FILES = ["fold1/a.flac", "fold1/b.flac", "fold2/c.flac"]


def write(tmp_path, name, text):
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return str(p)


def test_urbansound_style_with_fold_and_group(tmp_path):
    uri = write(tmp_path, "metadata.csv", "path,fold,fsID,classID,class\n"
                "fold1/a.flac,1,100,3,dog_bark\nfold1/b.flac,1,100,3,dog_bark\n"
                "fold2/c.flac,2,200,8,siren\nfold3/gone.flac,3,300,8,siren\n")
    t = parse_labels(uri, FILES)
    assert t.lookup("fold1/a.flac").labels == ["dog_bark"]
    assert t.lookup("fold2/c.flac").fold == 2 and t.lookup("fold2/c.flac").group == "200"
    assert t.classes == ["dog_bark", "siren"]
    assert t.problems == [("fold3/gone.flac", "missing_file", f"{uri} row 5: no such audio file")]


def test_original_urbansound_csv_matches_by_file_name(tmp_path):
    uri = write(tmp_path, "UrbanSound8K.csv", "slice_file_name,fsID,start,end,salience,fold,classID,class\n"
                "a.flac,100,0,4,1,1,3,dog_bark\nc.flac,200,0,4,1,2,8,siren\n")
    t = parse_labels(uri, FILES)
    assert t.lookup("fold1/a.flac").labels == ["dog_bark"] and t.lookup("fold2/c.flac").labels == ["siren"]
    assert t.lookup("fold1/b.flac") is None and not t.problems


def test_esc50_style(tmp_path):
    uri = write(tmp_path, "esc50.csv", "filename,fold,target,category,esc10,src_file,take\n"
                "a.flac,1,0,dog,True,100032,A\nb.flac,2,14,chirping_birds,False,100038,A\n")
    t = parse_labels(uri, FILES)
    assert t.lookup("fold1/b.flac").labels == ["chirping_birds"] and t.lookup("fold1/b.flac").group == "100038"


def test_audioset_segments_with_class_index(tmp_path):
    idx = write(tmp_path, "class_labels_indices.csv",
                'index,mid,display_name\n0,/m/09x0r,"Speech"\n1,/m/0jbk,"Animal"\n')
    seg = write(tmp_path, "balanced_train_segments.csv",
                "# Segments csv created Sun Mar  5 10:54:31 2017\n"
                "# num_ytids=3, num_segs=3, num_unique_labels=3, num_positive_labels=4\n"
                "# YTID, start_seconds, end_seconds, positive_labels\n"
                '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/m/0jbk"\n'
                '-0RWZT-miFs, 420.000, 430.000, "/m/0jbk,/m/zzzz"\n'
                'abcdefghijk, 0.000, 10.000, "/m/09x0r"\n')
    files = ["--PJHxphWEs_30000.wav", "Y-0RWZT-miFs.wav"]
    t = parse_labels(seg, files, idx)
    assert t.lookup("--PJHxphWEs_30000.wav").labels == ["Speech", "Animal"]
    assert t.lookup("Y-0RWZT-miFs.wav").labels == ["Animal"]
    kinds = sorted((p[0], p[1]) for p in t.problems)
    assert kinds == [("-0RWZT-miFs", "unknown_class"), ("abcdefghijk", "missing_file")]
    assert seg in find_labels_csv(str(tmp_path))  # found by its name


def test_generic_multi_label_and_bad_csv(tmp_path):
    uri = write(tmp_path, "labels.csv", "path,labels\nfold1/a.flac,dog;bird\n")
    assert parse_labels(uri, FILES).lookup("fold1/a.flac").labels == ["dog", "bird"]
    bad = write(tmp_path, "x.csv", "name,thing\na,b\n")
    with pytest.raises(ValueError, match="x.csv: need a file column"):
        parse_labels(bad, FILES)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        parse_labels(str(tmp_path / "nope.csv"), FILES)
