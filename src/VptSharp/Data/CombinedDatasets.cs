namespace VptSharp.Data;

/// <summary>Keeps only some classes of a dataset and renumbers them 0..k-1 in the given order.</summary>
public sealed class ClassFilterDataset : ImageDataset
{
    readonly ImageDataset parent;
    readonly int[] indices;
    readonly Dictionary<int, int> remap;
    readonly string[] classes;

    public ClassFilterDataset(ImageDataset parent, IReadOnlyList<int> keep)
    {
        this.parent = parent;
        remap = keep.Select((c, i) => (c, i)).ToDictionary(x => x.c, x => x.i);
        foreach (int c in keep)
            if (c < 0 || c >= parent.Classes.Count) throw new ArgumentException($"class {c} out of range 0..{parent.Classes.Count - 1}");
        indices = Enumerable.Range(0, parent.Count).Where(i => remap.ContainsKey(parent.LabelOf(i))).ToArray();
        classes = keep.Select(c => parent.Classes[c]).ToArray();
    }

    public override int Count => indices.Length;
    public override IReadOnlyList<string> Classes => classes;
    public override int LabelOf(int index) => remap[parent.LabelOf(indices[index])];
    public override RgbImage Load(int index) => parent.Load(indices[index]);
    public override string NameOf(int index) => parent.NameOf(indices[index]);
}

/// <summary>Several datasets side by side with disjoint label ranges (for mixed pretraining sources).</summary>
public sealed class ConcatDataset : ImageDataset
{
    readonly ImageDataset[] parts;
    readonly int[] offsets, labelOffsets;
    readonly string[] classes;

    public ConcatDataset(params ImageDataset[] parts)
    {
        this.parts = parts;
        offsets = new int[parts.Length + 1];
        labelOffsets = new int[parts.Length];
        var names = new List<string>();
        for (int i = 0; i < parts.Length; i++)
        {
            offsets[i + 1] = offsets[i] + parts[i].Count;
            labelOffsets[i] = names.Count;
            names.AddRange(parts[i].Classes);
        }
        classes = names.ToArray();
    }

    (int Part, int Local) Locate(int index)
    {
        int p = Array.BinarySearch(offsets, index);
        p = p >= 0 ? p : ~p - 1;
        while (p < parts.Length - 1 && offsets[p + 1] <= index) p++;
        return (p, index - offsets[p]);
    }

    public override int Count => offsets[^1];
    public override IReadOnlyList<string> Classes => classes;
    public override int LabelOf(int index) { var (p, l) = Locate(index); return labelOffsets[p] + parts[p].LabelOf(l); }
    public override RgbImage Load(int index) { var (p, l) = Locate(index); return parts[p].Load(l); }
    public override string NameOf(int index) { var (p, l) = Locate(index); return parts[p].NameOf(l); }
}

/// <summary>
/// Several splits of one dataset pooled over one class set ("train.json|val.json" for FGVC final runs). Labels are
/// matched by class name: when every part's class list is a prefix of the longest (numbered classes, a split that
/// lacks the top labels) that longest list is used; otherwise the sorted union of the names.
/// </summary>
public sealed class UnionDataset : ImageDataset
{
    readonly ImageDataset[] parts;
    readonly int[] offsets;
    readonly int[][] labelMaps; // per part: its label → union label
    readonly string[] classes;

    public UnionDataset(params ImageDataset[] parts)
    {
        if (parts.Length == 0) throw new ArgumentException("a union needs at least one dataset");
        this.parts = parts;
        var longest = parts.MaxBy(p => p.Classes.Count)!.Classes;
        classes = parts.All(p => p.Classes.SequenceEqual(longest.Take(p.Classes.Count)))
            ? longest.ToArray()
            : parts.SelectMany(p => p.Classes).Distinct().Order(StringComparer.Ordinal).ToArray();
        var index = classes.Select((n, i) => (n, i)).ToDictionary(x => x.n, x => x.i);
        labelMaps = parts.Select(p => p.Classes.Select(n => index[n]).ToArray()).ToArray();
        offsets = new int[parts.Length + 1];
        for (int i = 0; i < parts.Length; i++) offsets[i + 1] = offsets[i] + parts[i].Count;
    }

    (int Part, int Local) Locate(int index)
    {
        if (index < 0 || index >= Count) throw new ArgumentOutOfRangeException(nameof(index));
        int p = 0;
        while (offsets[p + 1] <= index) p++;
        return (p, index - offsets[p]);
    }

    public override int Count => offsets[^1];
    public override IReadOnlyList<string> Classes => classes;
    public override int LabelOf(int index) { var (p, l) = Locate(index); return labelMaps[p][parts[p].LabelOf(l)]; }
    public override RgbImage Load(int index) { var (p, l) = Locate(index); return parts[p].Load(l); }
    public override string NameOf(int index) { var (p, l) = Locate(index); return parts[p].NameOf(l); }
}
